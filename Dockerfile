# hopfieldd in a container (Debian bookworm, multi-stage).
#
#   docker build -t hopfield .                        # builds and runs the tests
#   docker build --build-arg RUN_TESTS=0 -t hopfield . # builds only
#   docker run -p 50051:50051 -p 9464:9464 -v hopfield-data:/data hopfield
#
# Without a Docker engine (or a registry): deploy/podman_smoke.sh builds the
# same file with podman from a debootstrap base image.
#
# Build stage: the -dev packages (the Makefile's list), the release preset,
# and the tests that need no Fashion-MNIST protocol run (ctest --preset
# release: unit, integration and Python tests).
FROM debian:bookworm AS build
ARG JOBS=2
ARG RUN_TESTS=1
# hopfield_build_info's commit label (the build context has no .git).
ARG COMMIT=unknown
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY Makefile ./
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends make \
    && make deps \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release -DHOPFIELD_BUILD_BENCHMARKS=OFF \
      -DHOPFIELD_COMMIT="${COMMIT}" \
    && cmake --build --preset release -j "${JOBS}"
# python_hardening_test is left to `make test` (dev build): two of its checks
# need a Retrieve that outlasts a burst of probes, sized for the unoptimised
# build; optimised, the Retrieve finishes first.
RUN if [ "${RUN_TESTS}" = 1 ]; then \
      ctest --preset release -j "${JOBS}" --output-on-failure \
        -E python_hardening_test; \
    fi

# Runtime stage: the shared libraries hopfieldd and the CLI link, a non-root
# user, the data volume.
FROM debian:bookworm AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends \
       libgrpc++1.51 libprotobuf32 libabsl20220623 librocksdb7.8 \
       libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hopfield \
    && useradd --system --uid 10001 --gid hopfield --home-dir /data \
       --shell /usr/sbin/nologin hopfield \
    && mkdir -p /data && chown hopfield:hopfield /data
COPY --from=build /src/build/release/server/hopfieldd /usr/local/bin/hopfieldd
COPY --from=build /src/build/release/client/hopfield /usr/local/bin/hopfield

# Every flag can come from the environment (FLAGS_<name>) through
# --tryfromenv; these defaults listen on all interfaces inside the
# container and keep the banks on the volume.
ENV FLAGS_listen=0.0.0.0:50051 \
    FLAGS_metrics_listen=0.0.0.0:9464 \
    FLAGS_data_dir=/data \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1
USER hopfield
WORKDIR /data
VOLUME ["/data"]
EXPOSE 50051 9464
# Healthy once the banks have loaded (health reports NOT_SERVING while
# loading and draining); on the port FLAGS_listen names. With TLS on, set
# HOPFIELD_HEALTHCHECK_ARGS to the CLI flags that reach it (e.g.
# "--tls_ca_file=/certs/ca.pem --tls_server_name=hopfield"; mutual TLS adds
# --tls_cert_file and --tls_key_file); health needs no API key.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD hopfield --server="127.0.0.1:${FLAGS_listen##*:}" --timeout_seconds=4 $HOPFIELD_HEALTHCHECK_ARGS health
ENTRYPOINT ["hopfieldd", "--tryfromenv=listen,metrics_listen,port_file,data_dir,sync_writes,max_message_bytes,keepalive_time_seconds,keepalive_timeout_seconds,retrieve_threads,max_banks,memory_budget_bytes,max_patterns_per_bank,index_min_patterns,worker_threads,max_queued_calls,access_log,max_connections,descriptor_reserve,shutdown_grace_seconds,tls_cert_file,tls_key_file,tls_client_ca_file,tls_reload_seconds,api_keys_file"]
