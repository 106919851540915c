#ifndef PKG04_L04_00_H
#define PKG04_L04_00_H
#include <string>
#include <vector>

namespace l04_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_00

#endif
