#!/usr/bin/env bash
# Builds the Debian package: dist/gitward_<version>-<debrev>_<arch>.deb.
#   contrib/package.sh [BUILD_DIR]    (default build-pkg)
# A new BUILD_DIR is configured as a release build for /usr with the commit
# from git, and built; an existing one is packaged as it was built (the suite
# packages the binary it tests). CPack (DEB, dependencies from dpkg-shlibdeps)
# runs the install rules of contrib/install.cmake: the package holds what
# `cmake --install` installs. Needs: contrib/install-deps.sh package.
#   GW_DEBREV=N    the Debian revision (default 1)
#   GW_VERSION=V   another version than the project's (new BUILD_DIR only)
#   GW_DIST=DIR    where the package goes (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-pkg}
debrev=${GW_DEBREV:-1}
if [[ ! -f $build/CMakeCache.txt ]]; then
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_TESTS=OFF -DCMAKE_INSTALL_PREFIX=/usr -DGW_COMMIT="$commit")
  [[ -n ${GW_VERSION:-} ]] && args+=(-DGW_VERSION="$GW_VERSION")
  cmake -S . -B "$build" "${args[@]}" >/dev/null
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target gitward gitward-plugin-files >/dev/null
out=$(cd "$build" && pwd)/deb-out
rm -rf "$out"
dist=${GW_DIST:-dist}
mkdir -p "$dist"
(cd "$build" && GW_DEBREV=$debrev cpack -G DEB -B "$out" -D CPACK_DEBIAN_PACKAGE_RELEASE="$debrev" >"$out.log" 2>&1) ||
  { cat "$out.log"; exit 1; }
deb=$(ls "$out"/gitward_*.deb)
mv -f "$deb" "$dist/"
echo "$dist/$(basename "$deb")"
