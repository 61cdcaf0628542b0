FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY protocols protocols
COPY loadtest loadtest
COPY config config
RUN pip install --no-cache-dir .
ENV SMSGW_HTTP__HOST=0.0.0.0 SMSGW_DATA_DIR=/data
VOLUME /data
EXPOSE 8080 2775
ENTRYPOINT ["smsgw"]
CMD ["run", "-c", "/app/config/gateway.toml"]
