# kbuild's own step image: the image a Tekton Task step (tekton/task/kbuild) runs.
#
# kbuild builds it, from a context that .ci/step-image-context prepares: kbuild compiled as a
# fully static executable (so it runs in an image with nothing else in it), Debian's CA bundle,
# and busybox-static for the debug variant.
#
#   .ci/step-image-context /tmp/kbuild-image
#   kbuild build --context=/tmp/kbuild-image --dockerfile=Dockerfile --skip-unused-stages \
#     --build-arg=VERSION=0.1.0 --build-arg=REVISION="$(git rev-parse HEAD)" \
#     --destination=registry.example.com/kbuild:0.1.0
#   (the same with --target=debug and --destination=registry.example.com/kbuild:0.1.0-debug)
#
# Variants:
#   default (the last stage): /kbuild and the CA certificates. No shell, no package manager,
#     nothing else to patch; `kubectl exec ... -- /kbuild explain` and `/kbuild debug continue`
#     work without a shell.
#   debug (--target=debug): the same plus busybox in /bin, for a shell in a paused step and for
#     Tekton's own /tekton/debug/scripts, which are /bin/sh scripts.
#
# The user is root (0:0), as the Task's `securityContext: runAsUser: 0` also says: RUN
# instructions get mount and PID namespaces and a chroot into the stage's rootfs, which only uid 0
# in the step's container can set up, and the files a build writes keep the owners the Dockerfile
# gives them. kbuild needs no `privileged` and never builds in the container's own `/`
# (tekton/README.md, "Security context").

ARG VERSION=unknown
ARG REVISION=unknown

FROM scratch AS kbuild
ARG VERSION
ARG REVISION
COPY --chmod=0755 kbuild /kbuild
COPY --chmod=0644 ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 0:0
LABEL org.opencontainers.image.title="kbuild" \
      org.opencontainers.image.description="Daemonless, unprivileged Dockerfile builder: a drop-in replacement for the Kaniko executor" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENTRYPOINT ["/kbuild"]

FROM kbuild AS debug
COPY --chmod=0755 busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]

FROM kbuild AS default
