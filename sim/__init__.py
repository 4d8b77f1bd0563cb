"""Verification: cocotb testbenches on Verilator."""
