"""OCI images and registries: the specs' media types and layouts (spec.py), registry references
(reference.py), the distribution HTTP client (client.py), packages pushed to and pulled from any OCI registry
as artifacts (artifact.py), and image layouts pushed unchanged (images.py). Nothing is imported here, so that
``import mlpack`` stays fast."""
