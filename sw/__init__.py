"""Software side: configs, QAT training, integer export and the golden model."""
