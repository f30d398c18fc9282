#!/bin/bash
# Build a minimal rootfs from Debian's busybox-static: one static binary plus applet links.
set -euo pipefail
dest=${1:?usage: rootfs.sh DIR}
bb=/bin/busybox
[ -x "$bb" ] || { echo "rootfs.sh: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$(dirname "$dest")/.rootfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,home,var/tmp,run}
cp "$bb" "$tmp/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
done
chmod 755 "$tmp"  # mktemp made it 0700: no other user could enter the container root
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
chmod 755 "$tmp"  # mktemp made it 0700: no other user (uid 1000, userns) could enter it
cat > "$tmp/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
P
cat > "$tmp/etc/group" <<'G'
root:x:0:
tty:x:5:
nogroup:x:65534:
user:x:1000:
G
echo "127.0.0.1 localhost" > "$tmp/etc/hosts"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$tmp" "$dest"
trap - EXIT
echo "rootfs: $dest ($("$bb" --list | wc -l) applets)"
