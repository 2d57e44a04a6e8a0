# Clarion in a container: `docker build -t clarion .`, then see compose.yaml.
# (Not built by this project's CI: its machines have no Docker engine. Kept simple on purpose.)
FROM python:3.11-slim

RUN useradd --system --home /var/lib/clarion --create-home clarion
WORKDIR /opt/clarion
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
# The exact versions CI tested (requirements.lock; `make lock` renews it).
RUN pip install --no-cache-dir -c requirements.lock . && rm -rf /root/.cache

USER clarion
WORKDIR /var/lib/clarion
ENV CLARION_CONFIG=/etc/clarion/clarion.toml \
    CLARION_HOST=0.0.0.0 \
    CLARION_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz').status == 200 else 1)"
CMD ["clarion", "run"]
