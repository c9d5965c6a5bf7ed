"""Measurements, figures and their command lines, beside (not inside) the models they measure."""
