"""Tests of shipping flowpipe: the container images and the Kubernetes manifests."""
