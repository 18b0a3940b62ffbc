// The kvm engine's 16550A: bytes written to THR reach the console, and the
// interrupt line is driven only when its level changes (each change is an
// ioctl on the vCPU's exit path).
import { describe, expect, it } from 'vitest';
import { Uart, UART_STATE_BYTES } from '../../src/vmm/engines/kvm/uart.js';

const THR = 0, IER = 1, IIR = 2, LSR = 5;

function uart() {
  const out: number[] = [];
  const irqs: number[] = [];
  const u = new Uart(new SharedArrayBuffer(UART_STATE_BYTES), (b) => out.push(...b), (level) => irqs.push(level));
  return { u, out, irqs };
}

describe('kvm UART', () => {
  it('sends THR bytes to the console and reports an empty transmitter', () => {
    const { u, out } = uart();
    for (const c of Buffer.from('ok\n')) u.write(THR, c);
    expect(Buffer.from(out).toString()).toBe('ok\n');
    expect(u.read(LSR) & 0x60).toBe(0x60);
  });

  it('drives the interrupt line on changes only', () => {
    const { u, irqs } = uart();
    // polled output (no THRE interrupt enabled): the line goes low once, then nothing more
    u.write(THR, 0x41);
    u.write(THR, 0x42);
    expect(irqs).toEqual([0]);
    // enabling THRE interrupts with an empty transmitter raises the line
    u.write(IER, 0x02);
    expect(irqs).toEqual([0, 1]);
    // reading IIR reports THRE and lowers it; the next byte raises it again; a byte while high changes nothing
    expect(u.read(IIR) & 0x0f).toBe(0x02);
    expect(irqs).toEqual([0, 1, 0]);
    u.write(THR, 0x43);
    u.write(THR, 0x44);
    expect(irqs).toEqual([0, 1, 0, 1]);
    expect(u.read(IIR) & 0x0f).toBe(0x02);
    expect(irqs).toEqual([0, 1, 0, 1, 0]);
  });

  it('shares the line state between vCPU threads', () => {
    const sab = new SharedArrayBuffer(UART_STATE_BYTES);
    const a: number[] = [], b: number[] = [];
    const ua = new Uart(sab, () => {}, (l) => a.push(l));
    const ub = new Uart(sab, () => {}, (l) => b.push(l));
    ua.write(IER, 0x02);
    ub.write(IER, 0x02); // still high: the other thread does not drive it again
    expect(a).toEqual([1]);
    expect(b).toEqual([]);
    ub.read(IIR);
    expect(b).toEqual([0]);
  });
});
