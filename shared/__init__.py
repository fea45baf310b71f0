"""What every side and the figures share: data, data order, model, config, plotting."""
