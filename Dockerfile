# Coffer in a container: `docker build -t coffer .`, then see README.md, "Running in a
# container". The image holds the server and the command line, and the dump and restore
# tools of the database sources (pg_dump/pg_restore, mariadb-dump/mariadb, mydumper/myloader).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p coffer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tar postgresql-client \
    mariadb-client mydumper \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/coffer /usr/local/bin/coffer
ENV COFFER_DATA_DIR=/data COFFER_LISTEN=0.0.0.0:7480
VOLUME /data
EXPOSE 7480
ENTRYPOINT ["coffer"]
CMD ["serve"]
