"""Tiny models that several test modules train or compile."""

from __future__ import annotations

#: a float64 classifier with dropout (3 inputs, 3 classes)
DROPOUT = """model dropout_cli
input  x : f64[B, 3]
input  y : i64[B]
layer  fc1 = dense(3 -> 16)
layer  drop = dropout(0.5)
layer  fc2 = dense(16 -> 3)
output scores = x |> fc1 >> relu >> drop >> fc2
loss   = cross_entropy(scores, y)
"""
