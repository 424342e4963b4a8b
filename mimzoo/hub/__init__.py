"""Hub layout: model folders (config.json + model.safetensors) read and written atomically."""
