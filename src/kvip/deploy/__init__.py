"""Deployment artefacts: least-privilege RBAC per mode and the manifests `kvip manifest` prints."""
