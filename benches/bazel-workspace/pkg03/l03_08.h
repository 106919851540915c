#ifndef PKG03_L03_08_H
#define PKG03_L03_08_H
#include <string>
#include <vector>

namespace l03_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_08

#endif
