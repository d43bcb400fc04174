"""hessdiff harness: program IR, op catalogue, oracle, generation, diff engine, reports, CLI."""
