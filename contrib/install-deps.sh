#!/usr/bin/env bash
# Installs what gitward needs from Debian 12 packages, only when missing.
# Nothing is assumed to be there already: every set names all it uses.
#   install-deps.sh build   compiler, CMake and the libraries
#   install-deps.sh test    build + package + everything contrib/test.sh runs: cmocka, clang with its
#                           sanitizer and libFuzzer runtimes, Podman, QEMU, the Git servers
#                           (nginx, fcgiwrap, openssh-server), signing tools, Prometheus,
#                           gcovr (GW_COVERAGE=1 contrib/test.sh), docker-registry (the pull test)
#   install-deps.sh package build + what contrib/package.sh and its check need: dpkg-dev
#                           (dpkg-shlibdeps), lintian, man-db, systemd (systemd-analyze)
#   install-deps.sh bench   test + the peers the benchmarks measure (supervisor,
#                           podman-compose, catatonit for podman kube play, hyperfine)
set -euo pipefail
what=${1:-build}
pkgs=(build-essential cmake pkg-config git ca-certificates
      libgit2-dev libyaml-dev libjansson-dev libssl-dev libcurl4-openssl-dev
      libmicrohttpd-dev libsystemd-dev libgpgme-dev libssh2-1-dev python3)
if [[ $what == test || $what == bench ]]; then
  # libclang-rt-14-dev: clang's ASan/UBSan and libFuzzer runtimes (a recommend of clang,
  # so --no-install-recommends leaves it out)
  pkgs+=(libcmocka-dev clang libclang-rt-14-dev clang-format python3-yaml python3-jsonschema
         podman runc catatonit busybox-static curl tar qemu-system-x86 docker-registry
         nginx fcgiwrap openssh-server openssh-client openssl apache2-utils gnupg age
         prometheus prometheus-alertmanager procps iproute2 groff-base gcovr)
fi
if [[ $what == package || $what == test || $what == bench ]]; then
  # the suite builds the package (tests/e2e/test_package.py)
  pkgs+=(dpkg-dev fakeroot lintian man-db systemd)
fi
if [[ $what == bench ]]; then
  pkgs+=(supervisor podman-compose hyperfine valgrind)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: packages such as nginx, ssh and prometheus must not start their system
  # services here; the tests start their own on loopback and stop what they started
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  ((created_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || { echo "install-deps: apt-get install failed ($rc)"; exit "$rc"; }
fi
