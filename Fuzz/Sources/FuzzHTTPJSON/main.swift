import FuzzDriver

runLibFuzzer { fuzzHTTPJSON($0, $1) }
