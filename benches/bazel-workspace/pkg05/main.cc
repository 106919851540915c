#include "pkg05/l05_00.h"
#include "pkg05/l05_01.h"
#include "pkg05/l05_02.h"
#include "pkg05/l05_03.h"
#include "pkg05/l05_04.h"
#include "pkg05/l05_05.h"
#include "pkg05/l05_06.h"
#include "pkg05/l05_07.h"
#include "pkg05/l05_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l05_00::describe(argc) << "\n";
  std::cout << l05_01::describe(argc) << "\n";
  std::cout << l05_02::describe(argc) << "\n";
  std::cout << l05_03::describe(argc) << "\n";
  std::cout << l05_04::describe(argc) << "\n";
  std::cout << l05_05::describe(argc) << "\n";
  std::cout << l05_06::describe(argc) << "\n";
  std::cout << l05_07::describe(argc) << "\n";
  std::cout << l05_08::describe(argc) << "\n";
  return 0;
}
