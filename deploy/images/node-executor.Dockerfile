# The node-executor for Windows nodes: cross-built on Linux with mingw-w64, carried by the
# HostProcess base image (a tiny image meant only for HostProcess containers; it works on every
# Windows Server version). Build with BuildKit for Windows:
#   docker buildx build --platform windows/amd64 -f deploy/images/node-executor.Dockerfile \
#     -t REGISTRY/node-executor:0.1.0 --push .
# tests/images.sh builds what the COPY below takes and checks that it exists.
FROM --platform=linux/amd64 docker.io/library/rust:1.95.0-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc-mingw-w64-x86-64 \
    && rustup target add x86_64-pc-windows-gnu
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p node-executor --bin node-executor --target x86_64-pc-windows-gnu

FROM mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0
# At the image root: pods start it as `node-executor.exe`, which containerd resolves under the
# container's mount ($CONTAINER_SANDBOX_MOUNT_POINT).
COPY --from=build /src/target/x86_64-pc-windows-gnu/release/node-executor.exe /node-executor.exe
ENTRYPOINT ["node-executor.exe"]
