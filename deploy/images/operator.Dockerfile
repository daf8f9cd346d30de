# The operator: built in a Rust image, run from distroless (glibc, CA certificates, no shell),
# as the non-root user the Deployment expects (65532).
#   docker build -f deploy/images/operator.Dockerfile -t REGISTRY/hostprocess-operator:0.1.0 .
# tests/images.sh builds what the COPY below takes and checks that it exists.
FROM docker.io/library/rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hostprocess-operator --bin hostprocess-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/hostprocess-operator /hostprocess-operator
USER 65532:65532
ENTRYPOINT ["/hostprocess-operator"]
