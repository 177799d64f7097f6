#!/bin/sh
# The host's own hardening (Lynis, the image suite's test_lynis.py, scores it): what an attacker who
# reaches sshd or a shell on the host finds. Everything here leaves the platform working: Docker
# keeps its forwarding and module loading, the build user and the owner keep key-based SSH.
# What Lynis suggests and is not applied is justified in README.md, "### Hardening".
# Runs after the last `apt-get update` of the bake (30-tailscale.sh): the security archive added
# below is first fetched by the instance's own updates, never by the bake.
set -eu
# SSH: keys only, no forwarding, short sessions. Packer's communicator and `ssh` to the owner's
# user need none of the forwarding; the file provisioner uses scp over an exec channel.
# Drop-ins are read in order and the first value wins: 10- comes before cloud-init's 50-.
install -d -m 0755 /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/10-ai-platform-hardening.conf <<'EOF'
# ai-platform: the image's hardening (image/provision/82-harden.sh)
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxAuthTries 3
MaxSessions 2
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
Compression no
TCPKeepAlive no
ClientAliveInterval 300
ClientAliveCountMax 2
LogLevel VERBOSE
EOF
chmod 0644 /etc/ssh/sshd_config.d/10-ai-platform-hardening.conf
# sshd refuses to start on a bad option: check now rather than lock everyone out at first boot.
# (-t needs host keys; the build machine has them, sysprep removes them later.)
sshd -t

# Network protocols nobody here uses (Lynis NETW-3200), and removable storage a cloud machine has not.
# `/bin/true`, not `/bin/false`: Debian 12's and Ubuntu 22.04's Lynis (3.0.x) count a protocol as
# disabled only for the line `install NAME /bin/true` (include/tests_networking, NETW-3200).
cat >/etc/modprobe.d/ai-platform-hardening.conf <<'EOF'
# ai-platform: protocols and buses the platform does not use (image/provision/82-harden.sh)
install dccp /bin/true
install sctp /bin/true
install rds /bin/true
install tipc /bin/true
install usb-storage /bin/true
install firewire-core /bin/true
install firewire-ohci /bin/true
blacklist dccp
blacklist sctp
blacklist rds
blacklist tipc
blacklist usb-storage
blacklist firewire-core
blacklist firewire-ohci
EOF

# Core dumps off: a dump of a process holding the platform's secrets (LiteLLM's master key,
# the Tailscale node key) would land on disk. limits (PAM sessions), sysctl (setuid programs) and
# systemd-coredump (the kernel's pipe) each close one way.
cat >/etc/security/limits.d/10-ai-platform-no-core.conf <<'EOF'
# ai-platform: no core dumps (image/provision/82-harden.sh)
* soft core 0
* hard core 0
EOF
install -d -m 0755 /etc/systemd/coredump.conf.d
cat >/etc/systemd/coredump.conf.d/10-ai-platform.conf <<'EOF'
# ai-platform: no core dumps (image/provision/82-harden.sh)
[Coredump]
Storage=none
ProcessSizeMax=0
EOF

# Kernel settings (Lynis KRNL-6000). Not here, on purpose: net.ipv4.conf.all.forwarding=0 and
# kernel.modules_disabled=1, which Lynis suggests: Docker's bridges need forwarding (ip_forward
# is the same switch, and dockerd turns it on anyway) and dockerd loads its netfilter and overlay
# modules when it starts.
cat >/etc/sysctl.d/60-ai-platform-hardening.conf <<'EOF'
# ai-platform: kernel hardening (image/provision/82-harden.sh). Docker needs forwarding: kept on.
net.ipv4.ip_forward = 1
fs.suid_dumpable = 0
fs.protected_fifos = 2
fs.protected_hardlinks = 1
fs.protected_regular = 2
fs.protected_symlinks = 1
kernel.core_uses_pid = 1
kernel.ctrl-alt-del = 0
kernel.dmesg_restrict = 1
kernel.kptr_restrict = 2
kernel.perf_event_paranoid = 3
kernel.randomize_va_space = 2
kernel.sysrq = 0
kernel.unprivileged_bpf_disabled = 1
kernel.yama.ptrace_scope = 1
net.core.bpf_jit_harden = 2
dev.tty.ldisc_autoload = 0
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv4.conf.all.accept_source_route = 0
net.ipv4.conf.default.accept_source_route = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.all.bootp_relay = 0
net.ipv4.conf.all.proxy_arp = 0
net.ipv4.conf.all.rp_filter = 1
net.ipv4.conf.all.log_martians = 1
net.ipv4.conf.default.log_martians = 1
net.ipv4.icmp_echo_ignore_broadcasts = 1
net.ipv4.icmp_ignore_bogus_error_responses = 1
net.ipv4.tcp_syncookies = 1
net.ipv6.conf.all.accept_redirects = 0
net.ipv6.conf.default.accept_redirects = 0
net.ipv6.conf.all.accept_source_route = 0
net.ipv6.conf.default.accept_source_route = 0
EOF
# systemd's own 99-protect-links.conf sorts after the file above (sysctl.d files apply in name order,
# whatever their folder) and sets fs.protected_fifos back to 1: the file of the same name in /etc
# replaces it.
cat >/etc/sysctl.d/99-protect-links.conf <<'EOF'
# ai-platform (image/provision/82-harden.sh): replaces systemd's /usr/lib/sysctl.d/99-protect-links.conf
fs.protected_fifos = 2
fs.protected_hardlinks = 1
fs.protected_regular = 2
fs.protected_symlinks = 1
EOF
# Applied now too, so that the image suite's Lynis run on this machine sees them (-e: a key this
# kernel lacks is skipped, as systemd-sysctl does at boot).
sysctl -q -e -p /etc/sysctl.d/60-ai-platform-hardening.conf

# login.defs: new files private to their group, a day between password changes, more hashing
# rounds. No maximum password age: no account here has a password (keys only), and an expired
# password would block the owner's key logins (sshd asks for a new password first).
set_login_def() {
    if grep -q "^[[:space:]]*$1[[:space:]]" /etc/login.defs; then
        sed -i -E "s/^[[:space:]]*$1[[:space:]].*/$1\t\t$2/" /etc/login.defs
    else
        printf '%s\t\t%s\n' "$1" "$2" >>/etc/login.defs
    fi
}
set_login_def UMASK 027
set_login_def PASS_MIN_DAYS 1
set_login_def SHA_CRYPT_MIN_ROUNDS 5000
set_login_def SHA_CRYPT_MAX_ROUNDS 50000

# Legal banner, before login on the console and over SSH.
for banner in /etc/issue /etc/issue.net; do
    cat >"$banner" <<'EOF'
Authorized access only. This system is private property of its owner; use is subject to the
owner's policy. Activity is monitored and logged, and may be used as evidence under law.
EOF
done

# Security updates every day (unattended-upgrades, the distribution's default: the security
# origin only). docker.io, containerd and runc stay held (/etc/apt/apt.conf.d/51ai-platform-docker).
cat >/etc/apt/apt.conf.d/20auto-upgrades <<'EOF'
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
EOF
# The Debian base is built from one archive (mmdebstrap): add the security archive it lacks, at
# the bake's mirror when it has one (as 10-apt.sh maps security.debian.org). Ubuntu's cloud image
# has its -security pocket already.
# shellcheck source=/dev/null
. /etc/os-release
if [ "$ID" = debian ] && ! grep -rqs -- "-security" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    security=http://security.debian.org
    [ -n "${APT_MIRROR:-}" ] && security=${APT_MIRROR%/}
    echo "deb $security/debian-security $VERSION_CODENAME-security main" \
        >/etc/apt/sources.list.d/debian-security.list
fi

# sysstat (installed from apt-packages.txt): the load history, every ten minutes.
if [ -f /etc/default/sysstat ]; then
    sed -i 's/^ENABLED=.*/ENABLED="true"/' /etc/default/sysstat
fi

# auditd (installed from apt-packages.txt): a record of who changed what the platform trusts.
if [ -d /etc/audit/rules.d ]; then
    cat >/etc/audit/rules.d/50-ai-platform.rules <<'EOF'
# ai-platform (image/provision/82-harden.sh): changes to accounts, sudo, sshd and the platform's config
-w /etc/passwd -p wa -k identity
-w /etc/group -p wa -k identity
-w /etc/shadow -p wa -k identity
-w /etc/sudoers -p wa -k sudoers
-w /etc/sudoers.d/ -p wa -k sudoers
-w /etc/ssh/sshd_config -p wa -k sshd
-w /etc/ssh/sshd_config.d/ -p wa -k sshd
-w /etc/ai-platform/ -p wa -k ai-platform
EOF
fi
