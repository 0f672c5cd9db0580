# kvip image: `docker build -t kvip:0.1.0 .` (documented in docs/install.md).
# Slim Python, pinned dependencies, iproute2 for operators debugging inside the pod, and BIRD 2:
# BGP mode runs its own bird as a child of the agent (never as a service); egress SNAT runs `nft`.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 bird2 nftables \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kvip
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps .

# The controller runs as this non-root user. The agent's manifests set runAsUser 0 with only
# NET_ADMIN and NET_RAW: Kubernetes grants added capabilities to root processes only.
USER 65532:65532
ENTRYPOINT ["kvip"]
CMD ["agent"]
