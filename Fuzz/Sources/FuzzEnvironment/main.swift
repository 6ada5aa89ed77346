import FuzzDriver

runLibFuzzer { fuzzEnvironment($0, $1) }
