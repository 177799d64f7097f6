# The golden image: one build, two sources (the AMI and a local qcow2), one provisioning.
#
# Every variable comes from the var file `builder bake` renders from the platform config
# (builder/bake/varfile.py); the defaults here only make `packer validate` meaningful alone.
# Precedence, highest first: `builder --set`/flags > BUILDER__* environment > platform.yaml >
# the config's defaults; Packer sees only the result.
#
# Two Packer generations read this file. Current Packer needs the plugins below (`packer init`)
# and knows the IMDS settings. Packer 1.6.6 (Debian's) knows neither: `builder bake` gives it a
# copy without the regions between "legacy-packer: omit" markers, and says what that build lacks.

# legacy-packer: omit-begin (Packer 1.6.6 has the builders built in and no plugin block)
packer {
  required_plugins {
    # Exact versions: `packer init` fetches these and no other (a range took whatever was newest).
    # Tags of github.com/hashicorp/packer-plugin-{amazon,qemu}: v1.8.2 (2026-07-13; imds_support on
    # amazon-ebs since 1.2.2) and v1.1.4 (2025-07-30). Moving one is an edit here: an input of the bake.
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "= 1.8.2"
    }
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = "= 1.1.4"
    }
  }
}
# legacy-packer: omit-end

variable "platform" {
  type    = string
  default = "ai-platform"
}
variable "build_id" {
  type    = string
  default = "validate"
}
variable "input_hash" {
  type    = string
  default = "none"
}
variable "payload_dir" {
  type        = string
  description = "Everything the provisioning installs, prepared on the build host (builder/bake/payload.py)."
  default     = "payload"
}
variable "output_dir" {
  type    = string
  default = "output"
}
variable "mirrors" {
  type        = map(string)
  description = "apt, registry, models: where the provisioning fetches from (empty: the public source)."
  default     = { apt = "", registry = "", models = "", tailscale_apt = "https://pkgs.tailscale.com/stable", rclone = "https://downloads.rclone.org" }
}
variable "source_image" {
  type        = string
  description = "The base the bake starts from (AMI id, or the local base's identity), for the BOM."
  default     = ""
}
variable "gpu_image" {
  type        = bool
  description = "The GPU image (an instance type with an NVIDIA GPU): image/provision/25-nvidia.sh runs only then."
  default     = false
}

# The AMI.
variable "aws_region" {
  type    = string
  default = "us-east-1"
}
variable "aws_ami_name" {
  type    = string
  default = "ai-platform-validate"
}
variable "aws_instance_type" {
  type    = string
  default = "m6i.large"
}
# The base AMI builder resolved (image.base_ami_owner and image.base_ami_name_filter, newest first)
# and put into the input hash: Packer builds on exactly that one, never on one it picks again.
variable "aws_source_ami" {
  type    = string
  default = ""
}
variable "aws_root_volume_gib" {
  type    = number
  default = 100
}
variable "aws_kms_key_id" {
  type    = string
  default = ""
}
variable "aws_subnet_id" {
  type    = string
  default = ""
}
variable "aws_encrypt_boot" {
  type    = bool
  default = true
}
variable "aws_copy_regions" {
  type    = list(string)
  default = []
}
variable "aws_region_kms_key_ids" {
  type    = map(string)
  default = {}
}
variable "aws_share_with_accounts" {
  type    = list(string)
  default = []
}
variable "aws_ec2_endpoint" {
  type        = string
  description = "Another EC2 endpoint (tests point it at moto); empty: AWS."
  default     = ""
}
variable "aws_offline" {
  type        = bool
  description = "Skip the credential, metadata and region checks that need AWS itself (tests only)."
  default     = false
}
# How Packer reaches the build instance (`builder bake --packer-var`): by default a temporary key
# pair and the instance's own address. The tests point them at a local VM while EC2 is moto.
variable "aws_ssh_host" {
  type    = string
  default = ""
}
variable "aws_ssh_port" {
  type    = number
  default = 22
}
variable "aws_ssh_username" {
  type    = string
  default = "ubuntu"
}
variable "aws_ssh_keypair_name" {
  type        = string
  description = "An existing key pair for the build instance; empty: Packer makes a temporary one."
  default     = ""
}
variable "aws_ssh_private_key_file" {
  type    = string
  default = ""
}
variable "aws_polling_delay_seconds" {
  type    = number
  default = 15
}
variable "aws_polling_max_attempts" {
  type        = number
  description = "15 s × 480: two hours for a snapshot of a root volume full of images and models."
  default     = 480
}

# The local qcow2.
variable "local_base_image" {
  type    = string
  default = "base/root.qcow2"
}
variable "local_base_checksum" {
  type    = string
  default = "none"
}
variable "local_boot" {
  type        = list(list(string))
  description = "How the base boots: the Debian 12 base (no boot loader) with its kernel and initrd from outside; [] for the Ubuntu cloud image, which boots itself."
  default = [
    ["-kernel", "base/vmlinuz"],
    ["-initrd", "base/initrd.img"],
    ["-append", "root=LABEL=root rw console=ttyS0 net.ifnames=0"],
  ]
}
variable "local_accelerator" {
  type    = string
  default = "tcg"
}
variable "local_disk_size" {
  type    = string
  default = "40G"
}
variable "local_seed_files" {
  type        = list(string)
  description = "NoCloud seed (user-data, meta-data) that creates the build user with the bake's key."
  default     = ["seed/user-data", "seed/meta-data"]
}
variable "ssh_private_key_file" {
  type    = string
  default = "seed/id_ed25519"
}

locals {
  build_tags = {
    "ai-platform:platform"   = var.platform
    "ai-platform:build-id"   = var.build_id
    "ai-platform:input-hash" = var.input_hash
    "ai-platform:role"       = "image-build"
  }
}

source "amazon-ebs" "aws" {
  region        = var.aws_region
  instance_type = var.aws_instance_type
  # aws.subnet_id: accounts without a default VPC need one, and for the bake a public one (an
  # internet gateway, public IPs on launch): Packer's SSH comes from this host's public address,
  # which the temporary security group admits, to the instance's public IP. Behind a NAT gateway
  # the build instance could reach apt and the registries, but Packer could not reach it.
  subnet_id            = var.aws_subnet_id
  source_ami           = var.aws_source_ami
  ssh_username         = var.aws_ssh_username
  ssh_host             = var.aws_ssh_host
  ssh_port             = var.aws_ssh_port
  ssh_keypair_name     = var.aws_ssh_keypair_name
  ssh_private_key_file = var.aws_ssh_private_key_file
  ami_name             = var.aws_ami_name
  encrypt_boot         = var.aws_encrypt_boot
  kms_key_id           = var.aws_kms_key_id
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.aws_root_volume_gib
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    encrypted             = true
    delete_on_termination = true
  }
  ami_regions        = var.aws_copy_regions
  region_kms_key_ids = var.aws_region_kms_key_ids
  ami_users          = var.aws_share_with_accounts
  tags               = merge(local.build_tags, { "Name" = "${var.platform}-${var.build_id}", "ai-platform:source-ami" = "{{ .SourceAMI }}" })
  run_tags           = merge(local.build_tags, { "Name" = "${var.platform}-build-${var.build_id}" })
  run_volume_tags    = local.build_tags
  snapshot_tags      = local.build_tags
  aws_polling {
    delay_seconds = var.aws_polling_delay_seconds
    max_attempts  = var.aws_polling_max_attempts
  }
  custom_endpoint_ec2        = var.aws_ec2_endpoint
  skip_credential_validation = var.aws_offline
  skip_metadata_api_check    = var.aws_offline
  skip_region_validation     = var.aws_offline
  # legacy-packer: omit-begin (Packer 1.6.6: the build instance allows IMDSv1, the key is RSA, SSH is open to
  # 0.0.0.0/0 in the temporary group, the AMI does not force IMDSv2)
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  imds_support            = "v2.0"
  temporary_key_pair_type = "ed25519"
  # SSH to the build instance from this host's public address only (found through checkip.amazonaws.com).
  temporary_security_group_source_public_ip = true
  # legacy-packer: omit-end
}

source "qemu" "local" {
  disk_image   = true
  iso_url      = var.local_base_image
  iso_checksum = var.local_base_checksum
  format       = "qcow2"
  # The build VM's flushes need not reach the host's disk: a bake that crashes is thrown away, and the
  # disk is complete once qemu exits after the clean shutdown. dpkg's fsyncs cost minutes under TCG.
  disk_cache           = "unsafe"
  accelerator          = var.local_accelerator
  headless             = true
  disk_size            = var.local_disk_size
  memory               = 2048
  cpus                 = 2
  output_directory     = "${var.output_dir}/local"
  vm_name              = "root.qcow2"
  cd_files             = var.local_seed_files
  cd_label             = "cidata"
  ssh_username         = "packer"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "20m"
  # The build user goes last, with the power: nothing of it stays in the image.
  shutdown_command = "sudo sh -c 'userdel --force --remove packer; rm -f /etc/sudoers.d/90-cloud-init-users; systemctl poweroff'"
  # The Debian base has no boot loader: its kernel is booted directly, as `builder launch --target local` does.
  qemuargs = var.local_boot
}

build {
  sources = ["source.amazon-ebs.aws", "source.qemu.local"]

  # 1. cloud-init first: it may still be writing apt sources or users when SSH answers.
  provisioner "shell" {
    script          = "image/provision/00-wait-for-cloud-init.sh"
    execute_command = "sudo env {{ .Vars }} sh '{{ .Path }}'"
  }

  # 2. The payload: rootfs, agent wheelhouse, compose plugin, image lock, model list.
  provisioner "shell" {
    inline = ["mkdir -p /tmp/ai-platform-payload"]
  }
  provisioner "file" {
    source      = "${var.payload_dir}/"
    destination = "/tmp/ai-platform-payload"
  }

  # 3. One provisioning for both sources: short scripts, one purpose each.
  provisioner "shell" {
    scripts = [
      "image/provision/10-apt.sh",
      "image/provision/20-docker.sh",
      "image/provision/25-nvidia.sh", # the GPU image only (gpu_image); the CPU image passes through
      "image/provision/30-tailscale.sh",
      "image/provision/40-agent.sh",
      "image/provision/45-rclone.sh",
      "image/provision/50-stacks.sh",
      "image/provision/60-images.sh",
      "image/provision/70-models.sh",
      "image/provision/80-bom.sh",
      "image/provision/82-harden.sh",
      "image/provision/85-test-with-docker.sh", # the suite's tests that need Docker running
    ]
    environment_vars = [
      "PAYLOAD=/tmp/ai-platform-payload",
      "APT_MIRROR=${var.mirrors["apt"]}",
      "REGISTRY_MIRROR=${var.mirrors["registry"]}",
      "MODELS_MIRROR=${var.mirrors["models"]}",
      "TAILSCALE_APT=${var.mirrors["tailscale_apt"]}",
      "RCLONE_MIRROR=${var.mirrors["rclone"]}",
      "SOURCE_IMAGE=${var.source_image}",
      "BUILD_ID=${var.build_id}",
      "INPUT_HASH=${var.input_hash}",
      "GPU_IMAGE=${var.gpu_image}",
    ]
    execute_command = "sudo env {{ .Vars }} sh '{{ .Path }}'"
  }

  provisioner "file" {
    direction   = "download"
    source      = "/etc/ai-platform/bom.json"
    destination = "${var.output_dir}/bom.json"
  }

  # 4. Sysprep, then the image suite asserts everything above, hygiene included; a failure fails the bake.
  provisioner "shell" {
    scripts          = ["image/provision/90-sysprep.sh", "image/provision/99-test-image.sh"]
    environment_vars = ["PAYLOAD=/tmp/ai-platform-payload"]
    execute_command  = "sudo env {{ .Vars }} sh '{{ .Path }}'"
  }

  post-processor "manifest" {
    output     = "${var.output_dir}/packer-manifest.json"
    strip_path = true
    custom_data = {
      build_id   = var.build_id
      input_hash = var.input_hash
    }
  }
}
