"""OCI images and registries: the specs' media types and layouts (spec.py), and packages pushed to and
pulled from any OCI registry."""
