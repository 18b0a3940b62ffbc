// A read-only MC146818 CMOS clock at ports 0x70/0x71: enough for the guest
// kernel to read the wall-clock time at boot (otherwise the container sees
// the epoch as the date). It reports the host's UTC time in BCD, 24-hour
// mode, never "update in progress"; writes to the clock are ignored.
export const RTC_INDEX_PORT = 0x70;
export const RTC_DATA_PORT = 0x71;

const bcd = (v: number) => ((Math.floor(v / 10) % 10) << 4) | (v % 10);

export class CmosRtc {
  private index = 0;
  private readonly now: () => Date;

  constructor(now: () => Date = () => new Date()) {
    this.now = now;
  }

  handles(port: number): boolean {
    return port === RTC_INDEX_PORT || port === RTC_DATA_PORT;
  }

  write(port: number, value: number): void {
    // Bit 7 of the index is the NMI mask, not part of the register number.
    if (port === RTC_INDEX_PORT) this.index = value & 0x7f;
  }

  read(port: number): number {
    if (port === RTC_INDEX_PORT) return 0xff;
    const t = this.now();
    switch (this.index) {
      case 0x00: return bcd(t.getUTCSeconds());
      case 0x02: return bcd(t.getUTCMinutes());
      case 0x04: return bcd(t.getUTCHours());
      case 0x06: return bcd(t.getUTCDay() + 1);
      case 0x07: return bcd(t.getUTCDate());
      case 0x08: return bcd(t.getUTCMonth() + 1);
      case 0x09: return bcd(t.getUTCFullYear() % 100);
      case 0x32: return bcd(Math.floor(t.getUTCFullYear() / 100));
      case 0x0a: return 0x26; // 32.768 kHz base, 1024 Hz rate, UIP clear
      case 0x0b: return 0x02; // 24-hour, BCD, no interrupts
      case 0x0c: return 0x00; // no interrupt pending
      case 0x0d: return 0x80; // battery good: the time is valid
      default: return 0x00;
    }
  }
}
