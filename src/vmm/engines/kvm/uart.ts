// A 16550A UART at 0x3f8, enough for the Linux 8250 driver's probe and its
// console: transmit goes straight to the console log; receive is never
// fed (the container's stdio is the agent's business, not the serial
// port's). State is shared by all vCPU threads through a SharedArrayBuffer.

const RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
const LCR_DLAB = 0x80;
const LSR_THRE = 0x20, LSR_TEMT = 0x40;
const MCR_LOOP = 0x10;
const IER_THRI = 0x02;
const IIR_NO_INT = 0x01, IIR_THRI = 0x02, IIR_FIFO = 0xc0;

/** word indices in the shared state */
const S = { lock: 0, ier: 1, lcr: 2, mcr: 3, scr: 4, dll: 5, dlm: 6, fcr: 7, thriPending: 8, line: 9 } as const;
export const UART_STATE_BYTES = 16 * 4;

export class Uart {
  private readonly s: Int32Array;
  private readonly out: (bytes: Uint8Array) => void;
  private readonly irq: (level: number) => void;
  private readonly one = new Uint8Array(1);

  /** `out` receives transmitted bytes; `irq` drives the interrupt line. */
  constructor(sab: SharedArrayBuffer, out: (bytes: Uint8Array) => void, irq: (level: number) => void) {
    this.s = new Int32Array(sab, 0, 16);
    this.out = out;
    this.irq = irq;
  }

  private lock(): void {
    while (Atomics.compareExchange(this.s, S.lock, 0, 1) !== 0) Atomics.wait(this.s, S.lock, 1, 1);
  }
  private unlock(): void {
    Atomics.store(this.s, S.lock, 0);
    Atomics.notify(this.s, S.lock, 1);
  }

  read(offset: number): number {
    this.lock();
    try {
      const s = this.s;
      const dlab = s[S.lcr]! & LCR_DLAB;
      switch (offset) {
        case RBR_THR: return dlab ? s[S.dll]! : 0;
        case IER: return dlab ? s[S.dlm]! : s[S.ier]!;
        case IIR_FCR: {
          const fifo = s[S.fcr]! & 1 ? IIR_FIFO : 0;
          if (s[S.thriPending] && s[S.ier]! & IER_THRI) {
            s[S.thriPending] = 0; // reading IIR clears the THRE interrupt
            this.update();
            return fifo | IIR_THRI;
          }
          return fifo | IIR_NO_INT;
        }
        case LCR: return s[S.lcr]!;
        case MCR: return s[S.mcr]!;
        case LSR: return LSR_THRE | LSR_TEMT;
        case MSR: {
          const mcr = s[S.mcr]!;
          if (mcr & MCR_LOOP) {
            // loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
            return ((mcr & 1) << 5) | ((mcr & 2) << 3) | ((mcr & 4) << 4) | ((mcr & 8) << 4);
          }
          return 0xb0; // DCD, DSR, CTS
        }
        case SCR: return s[S.scr]!;
        default: return 0;
      }
    } finally {
      this.unlock();
    }
  }

  write(offset: number, value: number): void {
    value &= 0xff;
    this.lock();
    try {
      const s = this.s;
      const dlab = s[S.lcr]! & LCR_DLAB;
      switch (offset) {
        case RBR_THR:
          if (dlab) { s[S.dll] = value; break; }
          if (!(s[S.mcr]! & MCR_LOOP)) { this.one[0] = value; this.out(this.one); }
          s[S.thriPending] = 1;
          this.update();
          break;
        case IER:
          if (dlab) { s[S.dlm] = value; break; }
          s[S.ier] = value & 0x0f;
          // Enabling THRE interrupts with an empty transmitter raises one at once.
          if (value & IER_THRI) s[S.thriPending] = 1;
          this.update();
          break;
        case IIR_FCR: s[S.fcr] = value & 0xc9; break;
        case LCR: s[S.lcr] = value; break;
        case MCR: s[S.mcr] = value & 0x1f; break;
        case SCR: s[S.scr] = value; break;
        default: break;
      }
    } finally {
      this.unlock();
    }
  }

  /** Drives the interrupt line; only changes reach `irq` (an ioctl): the line is driven from here alone. */
  private update(): void {
    const level = this.s[S.thriPending] && this.s[S.ier]! & IER_THRI ? 1 : 0;
    if (this.s[S.line] === level + 1) return; // 0: not driven yet, 1: low, 2: high
    this.s[S.line] = level + 1;
    this.irq(level);
  }
}
