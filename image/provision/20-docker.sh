#!/bin/sh
# Docker Engine (the distribution's docker.io) with the Compose v2 plugin the build host runs.
set -eu
install -D -m 0755 "$PAYLOAD/docker-compose" /usr/libexec/docker/cli-plugins/docker-compose
mkdir -p /etc/docker
# Bounded logs; a plain-HTTP registry mirror (image.mirrors.registry) is allowed only when one is set.
insecure=""
case "${REGISTRY_MIRROR:-}" in
    http://*) insecure=", \"insecure-registries\": [\"${REGISTRY_MIRROR#http://}\"]" ;;
esac
cat >/etc/docker/daemon.json <<JSON
{"log-driver": "json-file", "log-opts": {"max-size": "20m", "max-file": "5"}${insecure}}
JSON
systemctl enable docker.service
systemctl restart docker.service
docker version --format 'docker {{.Server.Version}}'
docker compose version
