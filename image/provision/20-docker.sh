#!/bin/sh
# Docker Engine (the distribution's docker.io) with the Compose v2 plugin the build host runs.
set -eu
install -D -m 0755 "$PAYLOAD/docker-compose" /usr/libexec/docker/cli-plugins/docker-compose
mkdir -p /etc/docker
# Bounded logs; a plain-HTTP registry mirror (image.mirrors.registry) is allowed only when one is set.
# live-restore: containers keep running while dockerd is stopped, restarted or dead, and dockerd
# takes them up again when it is back (docs.docker.com/engine/daemon/live-restore): an update's
# `systemctl restart docker` no longer stops the platform. Docker supports it across patch releases
# only, so unattended-upgrades leaves the engine alone (/etc/apt/apt.conf.d/51ai-platform-docker).
insecure=""
case "${REGISTRY_MIRROR:-}" in
    http://*) insecure=", \"insecure-registries\": [\"${REGISTRY_MIRROR#http://}\"]" ;;
esac
cat >/etc/docker/daemon.json <<JSON
{"live-restore": true, "log-driver": "json-file", "log-opts": {"max-size": "20m", "max-file": "5"}${insecure}}
JSON
systemctl enable docker.service
systemctl restart docker.service
docker version --format 'docker {{.Server.Version}}'
docker compose version
