"""What both implementations and the figures share: data, data order, model, config, plotting."""
