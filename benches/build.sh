#!/usr/bin/env bash
# Benchmark: builds the examples and a Debian-based Dockerfile, cold and warm, and prints wall time
# and kbuild's time and peak RSS per phase (pull, extract, run, snapshot, copy, layer, push), read
# from each build's report.
#
#   bash benches/build.sh        # as root (RUN namespaces); debootstrap needs Debian packages
#
# cold: a new work dir and an empty blob store; warm: the same blob store again (--cache-dir), so
# base layers are not downloaded twice; cache-*: the same with the layer cache on (cold, warm, and
# after changing one context file), with a second table of RUNs run, hits and base downloads. The
# Debian base is a debootstrap minbase of bookworm (kept in /var/tmp/kbuild-bench between runs),
# turned into an image by kbuild itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
[ "$(id -u)" = 0 ] || { echo "bench: needs root" >&2; exit 1; }
for p in docker-registry busybox-static debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
done
if [ -z "${KBUILD:-}" ]; then
  (cd "$repo" && cargo build --release --quiet)
  KBUILD="$repo/target/release/kbuild"
fi

cache=/var/tmp/kbuild-bench
mkdir -p "$cache"
debian="$cache/debian-ctx"
if [ ! -f "$cache/debian.done" ]; then
  echo "bench: debootstrap bookworm minbase (once)" >&2
  rm -rf "$debian"
  mkdir -p "$debian"
  debootstrap --variant=minbase bookworm "$debian/rootfs" >/dev/null
  # Device nodes and mounts are the sandbox's business, not the image's.
  rm -rf "$debian/rootfs/dev/"* "$debian/rootfs/proc/"* "$debian/rootfs/sys/"*
  printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["bash"]\n' > "$debian/Dockerfile"
  touch "$cache/debian.done"
fi

work=$(mktemp -d /tmp/kbuild-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
registry="127.0.0.1:$port"
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
  "$work/registry" "$registry" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

# build NAME CONTEXT DOCKERFILE BLOBDIR [flags...]: one timed build, its report kept
build() {
  local name=$1 context=$2 dockerfile=$3 blobs=$4; shift 4
  mkdir -p "$blobs"
  local start end
  start=$(date +%s.%N)
  # An absolute --dockerfile: like Kaniko, kbuild tries a relative one against the working
  # directory first, where this repository's own Dockerfile would be found.
  "$KBUILD" build --context="$context" --dockerfile="$context/$dockerfile" --destination="$registry/$name" \
    --kaniko-dir="$work/kaniko-$RANDOM" --cache-dir="$blobs" --report="$work/$name.json" \
    --insecure --insecure-pull --log-format=text -v error "$@" >/dev/null 2>"$work/$name.log" \
    || { cat "$work/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$name $(python3 -c "print(f'{$end - $start:.2f}')")" >> "$work/walls"
}

echo "bench: preparing base images" >&2
mkdir -p "$work/busybox/rootfs/bin" "$work/busybox/rootfs/etc" "$work/busybox/rootfs/tmp"
cp /bin/busybox "$work/busybox/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/busybox/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$work/busybox/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$work/busybox/rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$work/busybox/Dockerfile"
build busybox-base "$work/busybox" Dockerfile "$work/blobs-base"
build debian-base "$debian" Dockerfile "$work/blobs-base"

mkdir -p "$work/debian-app"
seq 1 20000 | sed 's/^/line /' > "$work/debian-app/data.txt"
cat > "$work/debian-app/Dockerfile" <<'DOCKERFILE'
ARG BASE
FROM ${BASE}
RUN dpkg-query -W > /packages.txt && find /usr -type f | wc -l > /usr-files.txt
COPY data.txt /opt/app/data.txt
RUN useradd --create-home app && sort -r /opt/app/data.txt > /home/app/sorted.txt
USER app
CMD ["bash"]
DOCKERFILE

busybox_base="BASE=$registry/busybox-base"
for round in cold warm; do
  blobs="$work/blobs-$round"
  [ "$round" = warm ] && blobs="$work/blobs-cold"
  build "hello-$round" "$repo/examples/hello" Dockerfile "$blobs" --build-arg="$busybox_base"
  build "multistage-$round" "$repo/examples/multistage" services/platform/zego-streaming/Dockerfile \
    "$blobs" --build-arg="$busybox_base"
  build "heredoc-$round" "$repo/examples/heredoc-onbuild-user" Dockerfile "$blobs" \
    --build-arg="$busybox_base"
  build "debian-$round" "$work/debian-app" Dockerfile "$blobs" --build-arg="BASE=$registry/debian-base"
done

# The layer cache over the same builds: cold (empty cache repo and blob store), warm (nothing
# changed), and after changing one context file (the multi-stage example's config: its builder
# copies the whole context before both RUNs, so both run again; the Debian data file, copied
# after the first RUN, so only the second runs again).
cp -r "$repo/examples/multistage" "$work/multistage"
for round in cache-cold cache-warm cache-changed; do
  if [ "$round" = cache-changed ]; then
    echo "bitrate: 6000k" > "$work/multistage/config/streaming.yaml"
    echo "one more line" >> "$work/debian-app/data.txt"
  fi
  cache=(--cache=true --cache-repo="$registry/bench-cache")
  build "multistage-$round" "$work/multistage" services/platform/zego-streaming/Dockerfile \
    "$work/blobs-cache" --build-arg="$busybox_base" "${cache[@]}"
  build "debian-$round" "$work/debian-app" Dockerfile "$work/blobs-cache" \
    --build-arg="BASE=$registry/debian-base" "${cache[@]}"
done

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB RAM"
python3 - "$work" <<'PY'
import json, sys, os
work = sys.argv[1]
walls = dict(line.split() for line in open(os.path.join(work, "walls")))
phases = ["pull", "extract", "run", "snapshot", "copy", "layer", "push"]
print(f"{'build':<26}{'wall s':>8}" + "".join(f"{p:>15}" for p in phases))
print(f"{'':<34}" + "".join(f"{'ms / MiB':>15}" for p in phases))
for name, wall in walls.items():
    report = json.load(open(os.path.join(work, name + ".json")))
    stats = {p["name"]: p for p in report.get("phases", [])}
    cells = []
    for p in phases:
        s = stats.get(p)
        cells.append(f"{s['ms']:>8} / {s['peak_rss_kb'] / 1024:>4.0f}" if s else f"{'-':>15}")
    print(f"{name:<26}{wall:>8}" + "".join(f"{c:>15}" for c in cells))
print()
print(f"{'build':<26}{'RUNs run':>9}{'cache hits':>12}{'misses':>8}{'base layers downloaded':>24}")
for name in walls:
    report = json.load(open(os.path.join(work, name + ".json")))
    runs = sum(1 for st in report["stages"] for i in st["instructions"]
               if i["text"].startswith("RUN") and i.get("exit_code") is not None
               and (i.get("cache") or {}).get("status") != "hit")
    summary = report.get("cache_summary") or {}
    base = report.get("base_layers") or {}
    print(f"{name:<26}{runs:>9}{summary.get('hits', '-'):>12}{summary.get('misses', '-'):>8}"
          f"{base.get('downloaded', '-'):>24}")
PY
