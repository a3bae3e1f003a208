#!/usr/bin/env bash
# Prepares a Debian kernel for the lab VM (see tests/vm/README.md) and prints the directory
# holding it. Everything goes into a cache reused across runs; only a missing kernel is
# fetched, with apt, once.
#
# Usage: tests/vm/prepare.sh <cache-dir> [<package>]
#   <package>  a Debian kernel image package, e.g. linux-image-6.12.100+deb12-amd64;
#              default: the one the cache already has, else what linux-image-amd64 depends on.
#
# Result, in <cache-dir>/<package>/:
#   vmlinuz      the kernel
#   initrd.img   busybox (static, the host's) + tests/vm/init + the modules needed to mount
#                the host over 9p (virtio, 9p, overlay, virtio-rng), in dependency order
#   modules/     lib/modules/<version>/ (networking, filesystems, crypto, virtio), which the
#                VM loads on demand over 9p with the host's modprobe, resolved by modules.dep
#   release      the kernel version (uname -r inside the VM)
#   stamp        hash of init + this script: the build is redone when they change
set -euo pipefail

cache=${1:?usage: prepare.sh <cache-dir> [<package>]}
package=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
# Modules the initramfs loads itself; anything else is loaded on demand later.
boot_modules=(virtio_pci 9p 9pnet_virtio overlay virtio_rng)

die() { echo "prepare.sh: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg-deb depmod modprobe cpio gzip flock timeout; do
  command -v "$tool" >/dev/null || die "missing $tool (run scripts/deps)"
done
busybox=$(command -v busybox) || die "missing busybox (apt-get install busybox-static)"
[[ $(ldd "$busybox" 2>&1 || true) == *"not a dynamic executable"* ]] ||
  die "$busybox is not static (apt-get install busybox-static)"

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# One preparer at a time; a second run waits, then finds the work done.
exec 9>"$cache/.lock"
flock 9

# What the result is built from: a change to either script rebuilds it (from the cached deb).
stamp=$(cat "$here/init" "$here/prepare.sh" | sha256sum | cut -d' ' -f1)

if [[ -z $package && -L $cache/default ]]; then
  package=$(readlink "$cache/default")
fi

# Apt must fail, not hang, when no mirror answers.
apt_opts=(-o APT::Sandbox::User=root -o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20)
apt_update() {
  echo "prepare.sh: apt-get update" >&2
  timeout 300 apt-get "${apt_opts[@]}" -qq update >&2 ||
    die "apt-get update failed or timed out: no Debian mirror reachable to fetch the VM kernel"
}
resolve_default() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-/ {print $2; exit}'
}
if [[ -z $package ]]; then
  package=$(resolve_default || true)
  if [[ -z $package ]]; then
    apt_update
    package=$(resolve_default || true)
  fi
  [[ -n $package ]] || die "apt knows no linux-image-amd64 even after apt-get update: no Debian mirror reachable, or no Debian source configured"
fi
[[ $package =~ ^linux-image-[A-Za-z0-9.+~-]+$ ]] || die "not a kernel package name: $package"

out=$cache/$package
if [[ $(cat "$out/stamp" 2>/dev/null) != "$stamp" ]]; then
  work=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$cache/debs"
  deb=$(ls "$cache/debs/${package}"_*.deb 2>/dev/null | head -1 || true)
  if [[ -z $deb ]]; then
    echo "prepare.sh: fetching $package with apt" >&2
    fetch() { (cd "$work" && timeout 600 apt-get "${apt_opts[@]}" -qq download "$package" >&2); }
    if ! fetch; then
      apt_update
      fetch || die "apt-get download $package failed: no Debian mirror reachable, or no such package"
    fi
    mv "$work"/"${package}"_*.deb "$cache/debs/"
    deb=$(ls "$cache/debs/${package}"_*.deb | head -1)
  fi

  echo "prepare.sh: unpacking $(basename "$deb")" >&2
  dpkg-deb -x "$deb" "$work/root"
  release=$(ls "$work/root/lib/modules")
  [[ -f $work/root/boot/vmlinuz-$release ]] || die "$deb holds no vmlinuz-$release"
  depmod -b "$work/root" "$release"

  # The initramfs: busybox, init, the boot modules in the order modprobe would load them.
  initrd=$work/initrd
  mkdir -p "$initrd"/{bin,sbin,dev,proc,sys,host,xfer,newroot,mod}
  cp "$busybox" "$initrd/bin/busybox"
  cp "$here/init" "$initrd/init"
  chmod 755 "$initrd/init"
  for m in "${boot_modules[@]}"; do
    modprobe -d "$work/root" -S "$release" --show-depends "$m" |
      awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    name=$(basename "$ko")
    case $name in
      *.ko) cp "$ko" "$initrd/mod/$name" ;;
      *.ko.xz) xz -dc "$ko" >"$initrd/mod/${name%.xz}" ;;
      *.ko.zst) zstd -qdc "$ko" >"$initrd/mod/${name%.zst}" ;;
      *) die "unknown module format: $ko" ;;
    esac
    echo "${name%%.ko*}" >>"$initrd/mod/order"
  done
  (cd "$initrd" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.img"

  # Keep the modules a lab can want (not sound, GPUs, wireless, NIC drivers).
  kernel=$work/root/lib/modules/$release/kernel
  find "$kernel" -mindepth 1 -maxdepth 1 ! -name net ! -name fs ! -name lib ! -name crypto \
    ! -name arch ! -name drivers -exec rm -rf {} +
  find "$kernel/drivers" -mindepth 1 -maxdepth 1 ! -name net ! -name virtio \
    -exec rm -rf {} +
  rm -rf "$kernel"/drivers/net/{wireless,ethernet,usb,can,wan,ieee802154,dsa,wwan,arcnet,hamradio,fddi,plip,slip,ppp,phy,mdio,pcs,hyperv,fjes,thunderbolt}
  depmod -b "$work/root" "$release"

  mkdir -p "$work/out"
  mv "$work/root/boot/vmlinuz-$release" "$work/out/vmlinuz"
  mv "$work/initrd.img" "$work/out/initrd.img"
  mkdir -p "$work/out/modules/lib/modules"
  mv "$work/root/lib/modules/$release" "$work/out/modules/lib/modules/"
  echo "$release" >"$work/out/release"
  echo "$stamp" >"$work/out/stamp"
  rm -rf "$out"
  mv "$work/out" "$out"
  rm -rf "$work"
  trap - EXIT
fi
[[ -e $cache/default ]] || ln -sfn "$package" "$cache/default"
echo "$out"
