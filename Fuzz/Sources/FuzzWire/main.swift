import FuzzDriver

runLibFuzzer { fuzzWire($0, $1) }
