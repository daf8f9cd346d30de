/* Wine 8 lacks bcryptprimitives.dll, whose ProcessPrng every Rust std program imports on
 * Windows. This stand-in forwards to RtlGenRandom (advapi32!SystemFunction036), which Wine has.
 * Used only to run the Windows build under Wine in tests; never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
