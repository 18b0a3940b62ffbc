import { describe, expect, it } from 'vitest';
import { CmosRtc, RTC_DATA_PORT, RTC_INDEX_PORT } from '../../src/vmm/engines/kvm/cmos-rtc.js';

const read = (rtc: CmosRtc, reg: number) => { rtc.write(RTC_INDEX_PORT, reg); return rtc.read(RTC_DATA_PORT); };

describe('kvm CMOS clock', () => {
  const rtc = new CmosRtc(() => new Date(Date.UTC(2026, 10, 22, 23, 59, 7)));

  it('reports the time in BCD, 24-hour mode', () => {
    expect([0, 2, 4, 7, 8, 9, 0x32].map((r) => read(rtc, r))).toEqual([0x07, 0x59, 0x23, 0x22, 0x11, 0x26, 0x20]);
    expect(read(rtc, 0x06)).toBe(1); // a Sunday
    expect(read(rtc, 0x0b) & 0x06).toBe(0x02); // BCD (bit 2 clear), 24-hour (bit 1 set)
  });

  it('never reports an update in progress and says the time is valid', () => {
    expect(read(rtc, 0x0a) & 0x80).toBe(0);
    expect(read(rtc, 0x0d) & 0x80).toBe(0x80);
  });

  it('ignores the NMI-mask bit of the index', () => {
    expect(read(rtc, 0x80 | 0x04)).toBe(0x23);
  });
});
