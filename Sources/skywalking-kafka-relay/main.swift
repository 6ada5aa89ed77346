import RelayApp

await RelayMain.main()
