"""tandem node agent: acts on one bare-metal node through narrow drivers."""
