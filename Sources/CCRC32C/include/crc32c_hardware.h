#ifndef RELAY_CRC32C_HARDWARE_H
#define RELAY_CRC32C_HARDWARE_H

#include <stddef.h>
#include <stdint.h>

/// Non-zero when this CPU has a CRC-32C instruction the relay can use: SSE4.2 on x86-64, the
/// CRC32 extension (HWCAP_CRC32 on Linux) on little-endian AArch64; zero everywhere else.
int relay_crc32c_hardware_available(void);

/// CRC-32C of `length` bytes with the instruction; call only when the above is non-zero.
/// Same convention as the table version: initial value ~0, final complement.
uint32_t relay_crc32c_hardware(const void *data, size_t length);

#endif
