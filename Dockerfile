# ferry in a small image:  docker build -t ferry .   then   docker run --rm ferry --help
FROM rust:1-bookworm AS build
WORKDIR /src
# No debug info in the shipped binary (the release profile keeps some for profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin ferry \
 && cp target/release/ferry /usr/local/bin/ferry

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/ferry /usr/local/bin/ferry
# Checkpoints are written to the working directory: mount a volume here to resume reruns.
WORKDIR /work
ENTRYPOINT ["ferry"]
CMD ["--help"]
