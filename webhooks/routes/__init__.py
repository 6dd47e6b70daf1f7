"""Thin HTTP handlers: declare dependencies, call one service function, return a schema."""
