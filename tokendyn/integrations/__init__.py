"""Bring your own run: callbacks for other training stacks and importers of the snapshots
researchers already hold. Each module imports its stack (transformers, lightning, safetensors)
only when used; ``import tokendyn.integrations`` imports none of them."""
