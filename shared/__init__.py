"""Code both implementations share: data, model, config, data order, plotting, timing, results."""
