"""The FHIR vocabulary every stage shares: resource type names and the types the cohort reads
(`types`), references and the `Type/id` a message may show (`references`), NDJSON files
(`ndjson`), the datatypes the mappers read (`datatypes`), decoding a resource whatever its shape
(`shape`), and what a server's CapabilityStatement offers (`capability`).

It is a leaf: it imports nothing else of fhir_hcc, so sources, mappers, server and registry can
all use it without importing each other.
"""
