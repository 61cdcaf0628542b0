FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY protocols protocols
COPY loadtest loadtest
COPY config config
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home-dir /data smsgw \
 && mkdir -p /data && chown smsgw /data
# The production config: no demo account, no simulator. The demo is opt-in:
# SMSGW_CONFIG=/app/config/gateway.toml (docker compose --profile demo).
ENV SMSGW_DATA_DIR=/data SMSGW_CONFIG=/app/config/production.toml
VOLUME /data
EXPOSE 8080 2775
USER smsgw
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["sh", "-c", "exec smsgw run -c \"$SMSGW_CONFIG\" \"$@\"", "smsgw"]
CMD []
