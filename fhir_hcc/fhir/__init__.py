"""The FHIR vocabulary every stage shares: resource type names and the types the cohort reads
(`types`), references (`references`) and NDJSON files (`ndjson`).

It is a leaf: it imports nothing else of fhir_hcc, so sources, mappers, server and registry can
all use it without importing each other.
"""
