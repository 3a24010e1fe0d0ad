"""The Pulumi layer: ComponentResources that register the builders' objects unchanged."""
