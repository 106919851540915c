#include "pkg00/l00_00.h"
#include "pkg00/l00_01.h"
#include "pkg00/l00_02.h"
#include "pkg00/l00_03.h"
#include "pkg00/l00_04.h"
#include "pkg00/l00_05.h"
#include "pkg00/l00_06.h"
#include "pkg00/l00_07.h"
#include "pkg00/l00_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l00_00::describe(argc) << "\n";
  std::cout << l00_01::describe(argc) << "\n";
  std::cout << l00_02::describe(argc) << "\n";
  std::cout << l00_03::describe(argc) << "\n";
  std::cout << l00_04::describe(argc) << "\n";
  std::cout << l00_05::describe(argc) << "\n";
  std::cout << l00_06::describe(argc) << "\n";
  std::cout << l00_07::describe(argc) << "\n";
  std::cout << l00_08::describe(argc) << "\n";
  return 0;
}
