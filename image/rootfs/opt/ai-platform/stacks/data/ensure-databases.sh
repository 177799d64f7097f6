#!/bin/sh
# One role and one database per app, created when missing and given the password from .env,
# at every start of the data stack: the image's init scripts run only on an empty data dir,
# and an app added later (or a restored volume) must still find its database.
# One psql session for all of it: each psql start costs seconds on a slow (emulated) machine.
set -eu

# The SQL for one role (its password read from the environment variable named, never inlined)
# and its databases. Names are this script's own constants.
ensure() {
    role=$1 password_variable=$2
    shift 2
    cat <<SQL
\\set role $role
\\getenv password $password_variable
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\\gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
SQL
    for database in "$@"; do
        cat <<SQL
\\set database $database
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database')
\\gexec
\\echo ensure-databases: $role owns $database
SQL
    done
}

{
    ensure litellm LITELLM_DB_PASSWORD litellm
    ensure n8n N8N_DB_PASSWORD n8n
    ensure dify DIFY_DB_PASSWORD dify dify_plugin
} | psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres
