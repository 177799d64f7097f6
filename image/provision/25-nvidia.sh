#!/bin/sh
# The GPU image only (GPU_IMAGE=true: Packer's gpu_image variable, set for an instance type with an
# NVIDIA GPU, by EC2's GpuInfo); the CPU image passes through. The base, AWS's Deep Learning Base
# OSS NVIDIA Driver GPU AMI, brings the driver and the NVIDIA Container Toolkit (why that base:
# builder/aws/gpu.py); this step checks they are there, gives Docker the nvidia runtime, and holds
# Docker to the cgroupfs cgroup driver: NVIDIA's documented workaround for its known issue where a
# `systemctl daemon-reload` under systemd's cgroup driver takes the GPUs from running containers
# (NVIDIA/nvidia-docker#1730), and the agent reloads units (firstboot/services.py, agent.py).
set -eu
if [ "${GPU_IMAGE:-false}" != true ]; then
    echo "cpu image: no NVIDIA setup"
    exit 0
fi
for tool in nvidia-smi nvidia-ctk; do
    command -v "$tool" >/dev/null || {
        echo "GPU image: $tool is missing: the base ($SOURCE_IMAGE) is not a Deep Learning Base OSS NVIDIA Driver AMI (image.gpu_base_ami_name_filter)" >&2
        exit 1
    }
done
# 20-docker.sh wrote daemon.json afresh: the runtime goes back in (NVIDIA's documented command),
# then the cgroup driver, merged into what is there.
nvidia-ctk runtime configure --runtime=docker
jq '. + {"exec-opts": ["native.cgroupdriver=cgroupfs"]}' /etc/docker/daemon.json >/etc/docker/daemon.json.new
mv /etc/docker/daemon.json.new /etc/docker/daemon.json
systemctl restart docker.service
[ "$(docker info --format '{{.CgroupDriver}}')" = cgroupfs ] || { echo "Docker did not take the cgroupfs driver" >&2; exit 1; }
# What the stack wrapper (ai-platform-stack) and the agent read: this is the GPU image.
mkdir -p /opt/ai-platform
echo gpu >/opt/ai-platform/image-variant
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
