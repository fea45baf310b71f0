"""What every implementation and the figures share: data, data order, model, config, plotting."""
