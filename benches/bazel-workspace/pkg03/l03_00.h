#ifndef PKG03_L03_00_H
#define PKG03_L03_00_H
#include <string>
#include <vector>

namespace l03_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_00

#endif
