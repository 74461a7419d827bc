#!/usr/bin/env bash
# Fixture for the container tests: the ddtrain image built with podman from docker/Dockerfile on a
# locally debootstrapped Debian base (no registry). The base image is kept between runs (make it
# again with DD_REBUILD_BASE=1); podman's layer cache makes an unchanged rebuild quick.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
podman_conf

if [ "${DD_REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$DD_BASE_IMAGE"; then
    step "base image $DD_BASE_IMAGE: debootstrap + import"
    for d in /tmp/ddtrain-rootfs.*; do   # a killed bootstrap's root file system
        [ -d "$d" ] || continue
        for m in dev/pts dev sys proc; do umount "$d/rootfs/$m" 2>/dev/null; done
        rm -rf --one-file-system "$d"
    done
    bash "$DD_SRC/docker/bootstrap-base.sh" "$DD_BASE_IMAGE" || { fail "docker/bootstrap-base.sh"; finish; }
else
    step "base image $DD_BASE_IMAGE: cached"
fi
# a build killed half-way leaves buildah working containers behind: remove ours (on our base, or
# on an image with our label)
base_id=$(podman image inspect --format '{{.Id}}' "$DD_BASE_IMAGE")
podman ps -a --external --format '{{.ID}} {{.ImageID}} {{.Status}}' | while read -r id img status; do
    [ "$status" = Storage ] || continue
    if [ "${base_id#"$img"}" != "$base_id" ] ||
       [ -n "$(podman image inspect --format '{{index .Labels "org.ddtrain.stage"}}' "$img" 2>/dev/null)" ]; then
        podman rm -f "$id" >/dev/null 2>&1 && echo "removed the working container $id of a killed build"
    fi
done
# the build stage gets a tag of its own so that its layers (compilers, -dev packages) stay cached
step "podman build --target build"
podman build -q -f "$DD_SRC/docker/Dockerfile" --build-arg BASE="$DD_BASE_IMAGE" --target build \
    -t "${DD_IMAGE%:*}-build:latest" "$DD_SRC" >build.log 2>&1 || { tail -n 40 build.log; fail "podman build --target build"; finish; }
step "podman build $DD_IMAGE"
podman build -q -f "$DD_SRC/docker/Dockerfile" --build-arg BASE="$DD_BASE_IMAGE" \
    -t "$DD_IMAGE" "$DD_SRC" >>build.log 2>&1 || { tail -n 40 build.log; fail "podman build"; finish; }
# earlier builds of our images, now untagged (podman 4.3's image prune leaves them)
podman images -q --filter dangling=true --filter label=org.ddtrain.stage | xargs -r podman rmi >/dev/null 2>&1

step "check the image"
podman run --rm --network none "$DD_IMAGE" ddtrain --version >out.txt 2>&1 && grep -q '^ddtrain 0\.' out.txt ||
    fail "ddtrain --version in the image: $(cat out.txt)"
podman run --rm --network none "$DD_IMAGE" sh -c 'mpirun --version && command -v sshd && ddtrain-node --help' >out.txt 2>&1 ||
    fail "mpirun/sshd/ddtrain-node in the image: $(tail -n 5 out.txt)"
podman image inspect --format '{{.Size}}' "$DD_IMAGE" | awk '{printf "image size: %.0f MB\n", $1 / 1e6}'
step "done"
finish
