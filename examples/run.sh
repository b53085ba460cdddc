#!/usr/bin/env bash
# Builds the examples with kbuild on this machine, offline, and shows the results.
#
#   bash examples/run.sh        (as root)
#
# It installs what it needs from Debian (docker-registry, busybox-static, skopeo) when missing,
# builds kbuild (cargo build --release) unless $KBUILD names a binary, starts a registry on
# 127.0.0.1 with a free port and throw-away storage, makes a busybox base image with kbuild itself
# (FROM scratch + COPY: no base image is downloaded), builds every example, prints what it pushed,
# and stops the registry. RUN needs root (namespaces), as in a Tekton step.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: RUN instructions need root for their namespaces; run it with sudo" >&2
  exit 1
fi
need=()
for p in docker-registry busybox-static skopeo; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "run.sh: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ -z "${KBUILD:-}" ]; then
  (cd "$repo" && cargo build --release --quiet)
  KBUILD="$repo/target/release/kbuild"
fi

work=$(mktemp -d /tmp/kbuild-examples.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
registry="127.0.0.1:$port"
cat > "$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $registry
YAML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
cleanup() { kill "$registry_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 50); do
  curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done

kb() {
  "$KBUILD" build --kaniko-dir="$work/kaniko" --cache-dir="$work/blobs" \
    --insecure --insecure-pull "$@"
}
mkdir -p "$work/blobs"

echo "== base image: busybox-static, built FROM scratch by kbuild"
base="$work/base"
mkdir -p "$base/rootfs/bin" "$base/rootfs/etc" "$base/rootfs/tmp"
cp /bin/busybox "$base/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$base/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$base/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$base/rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n' > "$base/Dockerfile"
# Each --dockerfile is absolute: like Kaniko, kbuild looks for a relative one in the working
# directory first, and this repository has a Dockerfile of its own.
kb --context="$base" --dockerfile="$base/Dockerfile" --destination="$registry/base:1" \
  --log-format=text -v warn

show() {
  local image=$1
  echo "-- $image"
  skopeo inspect --tls-verify=false "docker://$image" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print("   digest:", m["Digest"])
print("   layers:", len(m["Layers"]))
print("   env:   ", m.get("Env"))'
  skopeo inspect --config --tls-verify=false "docker://$image" | python3 -c '
import json, sys
c = json.load(sys.stdin)["config"]
print("   cmd:   ", c.get("Entrypoint"), c.get("Cmd"), "user:", c.get("User"), "workdir:", c.get("WorkingDir"))'
}

# Prints a file of a pushed image: copies the image with skopeo and unpacks its layers in order.
peek() {
  local image=$1 path=$2 dir
  dir=$(mktemp -d "$work/peek.XXXXXX")
  skopeo copy -q --src-tls-verify=false "docker://$image" "dir:$dir/image"
  mkdir "$dir/rootfs"
  for layer in $(python3 -c 'import json,sys; print(" ".join(l["digest"].split(":")[1] for l in json.load(open(sys.argv[1]))["layers"]))' "$dir/image/manifest.json"); do
    tar -xzf "$dir/image/$layer" -C "$dir/rootfs"
  done
  echo "   $path:"
  sed 's/^/     | /' "$dir/rootfs/$path"
}

echo "== hello"
kb --build-arg="BASE=$registry/base:1" --context="$here/hello" \
  --dockerfile="$here/hello/Dockerfile" --destination="$registry/hello:1" -v warn
show "$registry/hello:1"
peek "$registry/hello:1" built.txt

echo "== multistage (the zego-streaming shape)"
kb --build-arg="BASE=$registry/base:1" --context="$here/multistage" \
  --dockerfile="$here/multistage/services/platform/zego-streaming/Dockerfile" \
  --destination="$registry/zego-streaming:1" --digest-file="$work/digest" -v warn
show "$registry/zego-streaming:1"
echo "   --digest-file: $(cat "$work/digest")"
peek "$registry/zego-streaming:1" app/zego-streaming

echo "== heredoc, ONBUILD and USER"
kb --build-arg="BASE=$registry/base:1" --context="$here/heredoc-onbuild-user" \
  --dockerfile="$here/heredoc-onbuild-user/Dockerfile" --destination="$registry/heredoc:1" -v warn
show "$registry/heredoc:1"
peek "$registry/heredoc:1" home/app/greeting
peek "$registry/heredoc:1" onbuild.txt

echo "== done: every image above was built and pushed by $KBUILD"
